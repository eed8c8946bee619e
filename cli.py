"""Launcher for a checkout: ``python cli.py ...`` == ``egru-deploy ...``."""
from egru_deploy.cli import main

if __name__ == "__main__":
    main()
