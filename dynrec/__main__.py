"""``python -m dynrec``: the same as the ``dynrec`` command."""

from dynrec.cli import main

if __name__ == "__main__":
    main()
