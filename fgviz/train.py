"""`python -m fgviz.train`: the training CLI (lives in `fgviz.training.train`)."""

from fgviz.training.train import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
