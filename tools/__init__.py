"""Developer tools: demo, headless Blender sessions. Not shipped in the extension."""
