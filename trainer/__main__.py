"""``python -m trainer [synth|evaluate] ...``; also the module ``torchrun -m trainer`` runs on every rank."""
from __future__ import annotations

import sys


def _dispatch(argv: list[str]) -> int:
    if argv and argv[0] == "synth":
        from trainer.synth.cli import main as synth_main  # noqa: PLC0415

        return synth_main(argv[1:])
    from trainer.cli import main  # noqa: PLC0415

    return main(argv)


if __name__ == "__main__":
    sys.exit(_dispatch(sys.argv[1:]))
