"""Running assistant answers: prompt building, the generation task, persistence."""
