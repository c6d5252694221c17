"""The data side of gpt_scratch: known corpora by name (`corpora`) and the book's chapter 2 pipeline that turns
text into fixed-length input/target windows as `datasets` datasets (`pretraining`)."""
