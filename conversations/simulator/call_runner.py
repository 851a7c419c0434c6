"""A whole simulated call from the shell (``manage.py simulate call``): dial, answer each menu
with the given keys or words, wait on hold (watching for an agent to take the call, or for our
callback), leave a voicemail when asked, hang up; every verb printed as it would play."""

from collections.abc import Callable

from django.utils import timezone

from . import voice

MAX_STEPS = 60


class CallRunner:
    def __init__(self, *, base_url: str, sender: str, to: str, digits: str = "", speech: str = "", hold: float = 0,
                 poll: float = 5, write: Callable[[str], None] = print, sleep: Callable[[float], None] = lambda s: None,
                 clock: Callable[[], float] | None = None):
        import time

        self.base, self.sender, self.to = base_url, sender, to
        self.keys, self.speech = list(digits), speech
        self.hold, self.poll, self.write, self.sleep = hold, poll, write, sleep
        self.clock = clock or time.monotonic
        self.sid = voice.new_call_sid()
        self.params = voice.call_params(call_sid=self.sid, sender=sender, to=to)
        self.started = timezone.now()
        self.heard: list[dict] = []
        self.outcome = ""

    def _post(self, path: str, **extra) -> voice.Step:
        result = voice.step(self.base, path, {**self.params, **extra})
        if result.next.get("kind") == "error":
            raise OSError(f"{path} answered {result.status}: {result.next.get('detail', '')}")
        for verb in result.verbs:
            self.heard.append(verb)
            for line in voice.describe(verb):
                self.write(line)
        return result

    def run(self) -> str:
        self.write(f"☎ calling {self.to} from {self.sender} ({self.sid})")
        deadline = self.clock() + self.hold
        result = self._post(voice.VOICE_PATH)
        for _ in range(MAX_STEPS):
            nxt = result.next
            kind = nxt.get("kind")
            if kind == "gather":
                extra = self._input(nxt)
                if extra is None:
                    break
                result = self._post(nxt["action"], **extra)
            elif kind == "hold":
                result = self._on_hold(nxt, deadline)
                if result is None:
                    return self.outcome
            elif kind == "record":
                self.write("    (the caller leaves a message after the tone)")
                recording = voice.recording_params(self.params)
                self._post(nxt["callback"], **{k: v for k, v in recording.items() if k not in self.params})
                if nxt.get("transcribe_callback") and self.speech:
                    self._post(nxt["transcribe_callback"], RecordingSid=recording["RecordingSid"],
                               TranscriptionText=self.speech, TranscriptionStatus="completed")
                result = self._post(nxt["action"], RecordingUrl=recording["RecordingUrl"],
                                    RecordingDuration=recording["RecordingDuration"])
                self.outcome = "voicemail"
            elif kind == "connected":
                self.write(f"    ✔ connected to {', '.join(text for _verb, text in nxt['to'])} (no audio in the simulator)")
                self.outcome = self.outcome or "connected"
                break
            elif kind == "redirect":
                result = self._post(nxt["url"])
            else:
                break
        return self._hang_up()

    def _input(self, gather: dict) -> dict | None:
        if self.keys:
            key = self.keys.pop(0)
            self.write(f"    (the caller presses {key})")
            return {"Digits": key}
        if self.speech and "speech" in gather.get("input", ""):
            said, self.speech = self.speech, ""
            self.write(f"    (the caller says “{said}”)")
            return {"SpeechResult": said, "Confidence": "0.92"}
        if gather.get("empty"):
            self.write("    (the caller says nothing)")
            return {}
        return None

    def _on_hold(self, hold: dict, deadline: float) -> voice.Step | None:
        """Hold until an agent takes the call (our redirect), a key is pressed, or time is up."""
        queue_time = 0
        while True:
            redirect = voice.agent_redirect(self.sid, since=self.started)
            if redirect:
                self.write("    (an agent accepted: Twilio follows our redirect)")
                return self._post(redirect)
            announcement = self._post(hold["wait_url"], QueuePosition="1", QueueTime=str(queue_time))
            if announcement.next.get("kind") == "left":
                return self._post(hold["action"], QueueResult="leave", QueueTime=str(queue_time))
            if announcement.next.get("kind") == "gather" and self.keys:
                key = self.keys.pop(0)
                self.write(f"    (the caller presses {key})")
                choice = self._post(announcement.next["action"], Digits=key)
                if choice.next.get("kind") == "left":
                    left = self._post(hold["action"], QueueResult="leave", QueueTime=str(queue_time))
                    if key == "2":
                        self.outcome = "callback"
                        self._hang_up()
                        self._await_callback(deadline)
                        return None
                    return left
                continue
            if self.clock() >= deadline:
                self.write("    (the caller hangs up on hold)")
                self._post(hold["action"], QueueResult="hangup", QueueTime=str(queue_time))
                self.outcome = "abandoned"
                self._hang_up()
                return None
            self.sleep(self.poll)
            queue_time += int(self.poll)

    def _await_callback(self, deadline: float) -> None:
        while self.clock() < deadline:
            placed = voice.callback_for(self.sender, since=self.started)
            if placed:
                sid, url = placed
                self.write(f"☎ our callback rings ({sid}): the caller answers")
                self.params = voice.call_params(call_sid=sid, sender=self.to, to=self.sender, direction="outbound-api")
                result = self._post(url)
                if result.next.get("kind") == "connected":
                    self.write(f"    ✔ connected to {', '.join(t for _v, t in result.next['to'])} (no audio)")
                    self.outcome = "called back"
                self._hang_up()
                return
            self.sleep(self.poll)

    def _hang_up(self) -> str:
        self._post(voice.VOICE_PATH + "status/", CallStatus="completed",
                   CallDuration=str(max(1, int((timezone.now() - self.started).total_seconds()))))
        self.write(f"☎ hung up ({self.outcome or 'ended'})")
        return self.outcome
