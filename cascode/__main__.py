from cascode.cli import main

raise SystemExit(main())
