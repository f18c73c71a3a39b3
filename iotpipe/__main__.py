from iotpipe.cli import main

raise SystemExit(main())
