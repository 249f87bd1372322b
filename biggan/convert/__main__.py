import sys

from biggan.convert.cli import main

sys.exit(main())
