"""The book's three workflows, each a library function behind a ``gpt-scratch`` verb.

``pretrain`` (chapter 5), ``classify`` (chapter 6, with ``lora`` for appendix E) and ``instruct`` (chapter 7, with
``judge`` for the LLM judge). All three run the shared loop in ``gpt_scratch.training``.
"""
