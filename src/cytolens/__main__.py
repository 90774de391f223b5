"""``python -m cytolens``: the same command line as ``cytolens``."""

from cytolens.cli import main

if __name__ == "__main__":
    main()
