"""`python -m clarity.config`: print the table of variables (paste it into README.md)."""

from clarity.config.table import main

if __name__ == "__main__":
    main()
