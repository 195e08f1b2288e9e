from voice2fa_cli.cli import main

main(prog_name="voice2fa")
