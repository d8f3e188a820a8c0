"""Dashboard screens. Each is registered in ``dftui.ui.app.SCREENS`` and imported lazily."""
