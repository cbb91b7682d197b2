"""`python -m fgviz.evaluate`: recompute every model-card figure (lives in `fgviz.training.evaluate`)."""

from fgviz.training.evaluate import main

__all__ = ["main"]

if __name__ == "__main__":
    main()
