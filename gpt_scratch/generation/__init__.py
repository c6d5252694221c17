"""Turning a model into text.

``book``: the book's ``generate_text_simple`` and ``generate`` (chapters 4 and 5), written as the book writes them.
``fast_generate``: greedy/sampled decoding with a static KV cache, for the benchmark's speed figures.
``inference``: ``gpt-scratch generate``, any saved folder through transformers' ``generate()`` (one loader,
``load_model``; one prompt past the context, or batches with left padding).
"""
