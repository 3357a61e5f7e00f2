"""``python -m fat_tf COMMAND ...``: the same as the ``fat-tf`` command."""

import sys

from fat_tf.commands import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m fat_tf"))
