"""Host-side tools for boards: the virtual board, deploying the firmware, a board's login."""
