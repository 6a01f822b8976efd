"""The shared format: the official folder layout, the Hugging Face DatasetDict, the cache folder."""
