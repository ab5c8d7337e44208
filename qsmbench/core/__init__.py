"""The words everything else uses: settings (Protocol, Execution, algorithm configs), errors, message helpers."""
