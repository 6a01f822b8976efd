"""Results that travel: publish a run to the Hugging Face Hub (:mod:`.push`, :mod:`.cards`),
read runs from folders or the Hub (:mod:`.sources`) and merge them into one leaderboard
(:mod:`.merge`)."""
