"""The book's teaching variants, kept beside the model for readers: chapter 3's attention mechanisms, chapter 2's tokenizers."""
