"""Everything that trains. Imports zoo; zoo never imports training."""
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
