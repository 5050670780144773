import sys

from streams.worker.runner import main

sys.exit(main())
