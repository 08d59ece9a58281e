# Knobs of the Ollama backend hosts (group `llm`). The deploy changes nothing on them; it only
# reads facts (port listening, models present) to prove the gateway can use them.

ollama_service = "ollama"
ollama_port = 11434
