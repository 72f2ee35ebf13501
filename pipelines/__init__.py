"""The shell (`clearline.pipelines`): the command line, the Kafka connectors, the three
dataflows and their sinks, the local broker, the world generator and the demo. It holds
no business rules; it wires the areas below it to Kafka, Bytewax and the files."""
