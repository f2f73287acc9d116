"""v4s_agent."""
