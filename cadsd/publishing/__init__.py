"""Publishing: the dataset card and `cadsd push` to the Hugging Face Hub."""
