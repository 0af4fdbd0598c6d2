"""Fixtures shared by the netns tier."""

from tests.netns.daemon_pair import net

__all__ = ["net"]
