"""Online evaluation: credit interleaved queries to a team from their clicks, and decide by a sequential test."""
