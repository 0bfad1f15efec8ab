"""Floor 3: functions-framework answering a constant, no model: the HTTP floor of a function."""


def handle(request):
    return '{"label": [0]}'
