from dftui.cli import main

raise SystemExit(main())
