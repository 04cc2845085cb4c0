from openrr.cli import main

raise SystemExit(main())
