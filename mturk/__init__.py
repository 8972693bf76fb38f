"""mturk stage."""
