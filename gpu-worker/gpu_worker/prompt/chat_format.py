"""DeepSeek-V3's chat template as code, plus the rules of workers/gateway/src/tokenizer/README.md
for what it leaves open (the gateway's chat-format.ts is held to the same vectors). The template's
quirks are kept on purpose, as the model saw them in training: tool-call and tool-output state is
never reset, and assistant text after tool outputs has no <｜Assistant｜> marker.
"""

from .tool_prompt import js_json_dumps, render_tools_prompt

BOS = "<｜begin▁of▁sentence｜>"
EOS = "<｜end▁of▁sentence｜>"
USER = "<｜User｜>"
ASSISTANT = "<｜Assistant｜>"
TOOL_CALLS_BEGIN = "<｜tool▁calls▁begin｜>"
TOOL_CALLS_END = "<｜tool▁calls▁end｜>"
TOOL_CALL_BEGIN = "<｜tool▁call▁begin｜>"
TOOL_CALL_END = "<｜tool▁call▁end｜>"
TOOL_SEP = "<｜tool▁sep｜>"
TOOL_OUTPUTS_BEGIN = "<｜tool▁outputs▁begin｜>"
TOOL_OUTPUTS_END = "<｜tool▁outputs▁end｜>"
TOOL_OUTPUT_BEGIN = "<｜tool▁output▁begin｜>"
TOOL_OUTPUT_END = "<｜tool▁output▁end｜>"
FIM_BEGIN = "<｜fim▁begin｜>"
FIM_HOLE = "<｜fim▁hole｜>"
FIM_END = "<｜fim▁end｜>"
SPECIAL_TOKENS = (BOS, EOS, USER, ASSISTANT, TOOL_CALLS_BEGIN, TOOL_CALLS_END, TOOL_CALL_BEGIN,
                  TOOL_CALL_END, TOOL_SEP, TOOL_OUTPUTS_BEGIN, TOOL_OUTPUTS_END, TOOL_OUTPUT_BEGIN,
                  TOOL_OUTPUT_END, FIM_BEGIN, FIM_HOLE, FIM_END)
# Ordinary text in this vocabulary (several tokens each): found in decoded text, not by ids.
THINK_BEGIN = "<think>"
THINK_END = "</think>"

REASONER_MODEL = "deepseek-reasoner"


def text_content(content):
    """A string, or the texts of an array of {type: "text", text} parts joined with nothing."""
    if content is None or isinstance(content, str):
        return content
    return "".join(part.get("text") or "" for part in content
                   if isinstance(part, dict) and part.get("type") == "text")


def _normalize(message: dict) -> dict:
    """A request message as the template reads it: content a string, None only beside tool calls."""
    role = message.get("role")
    content = text_content(message.get("content"))
    tool_calls = message.get("tool_calls") if role == "assistant" else None
    tool_calls = [_normalize_tool_call(c) for c in tool_calls or []]
    if tool_calls:  # clients send "" (or nothing) beside calls; the template renders them for None
        content = content or None
    elif content is None:
        content = ""
    return {"role": role, "content": content, "tool_calls": tool_calls}


def _normalize_tool_call(call: dict) -> dict:
    function = call.get("function") or {}
    arguments = function.get("arguments")
    if not isinstance(arguments, str):
        arguments = "" if arguments is None else js_json_dumps(arguments)
    return {"type": call.get("type") or "function",
            "function": {"name": function.get("name") or "", "arguments": arguments}}


def render_template(messages: list[dict]) -> str:
    """The chat_template of DeepSeek-V3's tokenizer_config.json, for normalized messages, with the
    generation prompt."""
    system_prompt = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    out = [BOS, system_prompt]
    is_first = False  # a tool call was rendered (never reset, as in the template)
    is_tool = False  # inside a run of tool outputs
    is_output_first = True  # no tool output rendered yet (never reset, as in the template)
    for m in messages:
        role, content = m["role"], m["content"]
        if role == "user":
            is_tool = False
            out.append(USER + content)
        elif role == "assistant" and content is None:
            is_tool = False
            for call in m["tool_calls"]:
                function = call["function"]
                rendered = (TOOL_CALL_BEGIN + call["type"] + TOOL_SEP + function["name"]
                            + "\n```json\n" + function["arguments"] + "\n```" + TOOL_CALL_END)
                if not is_first:
                    out.append(ASSISTANT + TOOL_CALLS_BEGIN + rendered)
                    is_first = True
                else:
                    out.append("\n" + rendered + TOOL_CALLS_END + EOS)
        elif role == "assistant":
            out.append((TOOL_OUTPUTS_END if is_tool else ASSISTANT) + content + EOS)
            is_tool = False
        elif role == "tool":
            is_tool = True
            out.append((TOOL_OUTPUTS_BEGIN if is_output_first else "\n")
                       + TOOL_OUTPUT_BEGIN + content + TOOL_OUTPUT_END)
            is_output_first = False
    out.append(TOOL_OUTPUTS_END if is_tool else ASSISTANT)
    return "".join(out)


def render_chat(messages: list, tools: list | None = None, model: str = "deepseek-chat") -> str:
    """The full prompt text for a chat request (chat prefix completion included). Tool
    definitions become the last part of the system prompt."""
    reasoner = model == REASONER_MODEL
    normalized = [_normalize(m) for m in messages]
    prefix = None
    if messages and messages[-1].get("role") == "assistant" and messages[-1].get("prefix"):
        prefix = messages[-1]
        normalized.pop()
    if tools:
        normalized.append({"role": "system", "content": render_tools_prompt(tools)})
    text = render_template(normalized)
    if reasoner:
        text += THINK_BEGIN + "\n"
    if prefix is not None:
        if reasoner:
            text += (prefix.get("reasoning_content") or "") + "\n" + THINK_END + "\n\n"
        text += text_content(prefix.get("content")) or ""
    return text


def render_fim(prompt: str, suffix: str | None = None) -> str:
    return BOS + FIM_BEGIN + (prompt or "") + FIM_HOLE + (suffix or "") + FIM_END
