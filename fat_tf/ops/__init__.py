"""Pure tensor functions: losses, schedules, ramps and the methods' building blocks."""
