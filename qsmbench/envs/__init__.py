"""Where experience comes from: Gymnasium and DeepMind Control envs in lockstep batches, worker processes, datasets."""
