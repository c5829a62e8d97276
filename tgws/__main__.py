from tgws.cli import main

raise SystemExit(main())
