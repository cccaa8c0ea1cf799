from haoscar.cli.main import run

run()
