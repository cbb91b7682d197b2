"""`python -m fgviz.convert`: official TransFG checkpoints and Google ViT npz files -> fgviz models (the command
lives in `fgviz.weights.convert`)."""

from fgviz.weights.convert import main, run

__all__ = ["main", "run"]

if __name__ == "__main__":
    raise SystemExit(run())
