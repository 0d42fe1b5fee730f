"""Running the `fslora` CLI in tests."""
from fslora_cli.main import main


def one_line_error(capsys, argv) -> str:
    """Run ``fslora argv``; it must exit 2 with exactly one stderr line, 'fslora <command>: error: ...'."""
    capsys.readouterr()
    assert main(argv) == 2, argv
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith(f"fslora {argv[0]}: error:"), err
    return err
