"""Take the README's picture of the live page: a real demo server, headless Chromium in
the dark scheme, a few exchanges typed into the page, then a screenshot.

    PYTHONPATH=src python docs/screenshot.py docs/page.png
"""

from __future__ import annotations

import sys

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from agentcast.memgpt.app import AgentServer

EXCHANGES = ("hello", "what is the weather like on the moon?")
DONE_STEPS = (By.CSS_SELECTOR, ".step.done")


def main(output: str) -> None:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage",
                     "--window-size=1000,990", "--hide-scrollbars"):  # fmt: skip
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        with AgentServer(port=0) as server:
            driver.get(f"http://127.0.0.1:{server.port}/?agent=demo")
            wait = WebDriverWait(driver, 20, poll_frequency=0.05)
            field = driver.find_element(By.ID, "message")
            for done, text in enumerate(EXCHANGES, 1):
                wait.until(lambda _: field.is_enabled())
                field.send_keys(text, Keys.ENTER)
                wait.until(lambda d, n=done: len(d.find_elements(*DONE_STEPS)) == n)
            driver.find_element(By.ID, "message").send_keys("Tell me more")
            driver.save_screenshot(output)
    finally:
        driver.quit()


if __name__ == "__main__":
    main(sys.argv[1])
