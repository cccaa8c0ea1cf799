"""The Typer command line: parsing and printing only; the work is done in ``haoscar.commands``."""
