from chatrt.cli import main

raise SystemExit(main())
