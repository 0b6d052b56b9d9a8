"""A customer played by a second model, from a scenario's persona and goal (as τ-bench's user).

It sees the business's texts as the other side of the chat and writes the customer's next text,
or ``###STOP###`` when the goal is reached or cannot be.
"""

from __future__ import annotations

from dataclasses import dataclass

import openai

STOP = "###STOP###"

_INSTRUCTIONS = """You are role-playing a customer who texts {business}. Stay in character.

Who you are: {persona}
What you want: {goal}
Today is {today}.

Write only your next text message: short and plain, the way people text. Share details only
when asked or when they matter. Do not make up a different goal. When what you wanted is done,
or clearly cannot be done, or you are told a person will contact you, answer exactly {stop}."""


@dataclass
class SimulatedCustomer:
    client: openai.AsyncOpenAI
    model: str
    instructions: str

    @classmethod
    def of(
        cls,
        client: openai.AsyncOpenAI,
        model: str,
        *,
        business: str,
        persona: str,
        goal: str,
        today: str,
    ) -> SimulatedCustomer:
        text = _INSTRUCTIONS.format(
            business=business, persona=persona, goal=goal, today=today, stop=STOP
        )
        return cls(client, model, text)

    async def next_text(self, thread: list[tuple[str, str]]) -> str | None:
        """The customer's next text after `thread` ((who, text) with who "business" or
        "customer"), or None when they are done."""
        messages: list[dict[str, str]] = [{"role": "system", "content": self.instructions}]
        if not thread or thread[0][0] != "business":
            messages.append({"role": "user", "content": "(You text them first.)"})
        for who, text in thread:
            messages.append({"role": "user" if who == "business" else "assistant", "content": text})
        answer = await self.client.chat.completions.create(
            model=self.model,
            messages=messages,  # type: ignore[arg-type]
            temperature=0.7,
            max_tokens=200,
        )
        text = (answer.choices[0].message.content or "").strip()
        if not text or STOP in text:
            return None
        return text[:1600]
