"""Publishing: results files and exports written for people and back to the sources."""
