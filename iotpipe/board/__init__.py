"""Host-side tools for boards: the virtual board, deploy, port discovery."""
