"""Many runs: grid files, the plan of what is done and left, and running it here or on Ray (`qsmbench reproduce`)."""
