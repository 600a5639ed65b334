"""Everything that trains. Imports zoo; zoo never imports training."""
