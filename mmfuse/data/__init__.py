"""Data: records from sources, answer vocabulary, tokenizer, image batches, the data module."""
