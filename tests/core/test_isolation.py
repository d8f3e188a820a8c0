"""dftui.core must import, and work, without Textual or Rich."""

from __future__ import annotations

import subprocess
import sys


def test_core_imports_without_textual_or_rich() -> None:
    code = (
        "import sys, pkgutil, importlib, dftui.core\n"
        "for m in pkgutil.iter_modules(dftui.core.__path__):\n"
        "    importlib.import_module('dftui.core.' + m.name)\n"
        "bad = sorted(n for n in sys.modules if n.split('.')[0] in ('textual', 'rich'))\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_core_works_when_textual_and_rich_cannot_be_imported() -> None:
    # Block the packages outright: any import of them in the core would fail.
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('textual', 'rich'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from dftui.core import train, predict, data, checkpoint, runs, events, metrics\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def test_cli_help_does_not_import_torch() -> None:
    code = (
        "import sys\n"
        "from dftui.cli import build_parser\n"
        "build_parser()\n"
        "assert 'torch' not in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
