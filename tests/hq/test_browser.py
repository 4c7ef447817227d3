"""The chain page in a real headless Chromium: a regional manager logs in, sees only their stores, logs out."""
from __future__ import annotations

from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from .chainkit import browser


def test_regional_manager_in_a_browser(chain, tmp_path):
    url = str(chain.base_url).rstrip("/")
    driver = browser(tmp_path)
    try:
        driver.get(url + "/")
        assert driver.current_url.endswith("/login")
        driver.find_element(By.ID, "user").send_keys("rita")
        driver.find_element(By.ID, "password").send_keys("correct horse")
        driver.find_element(By.ID, "login").click()
        # The click navigates: wait for the chain page rather than read the login page still shown (a loaded CI).
        rows = WebDriverWait(driver, 15).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#stores tr[data-store]"))
        assert [r.get_attribute("data-store") for r in rows] == ["bsl-03", "zrh-01"]
        incidents = driver.find_elements(By.CSS_SELECTOR, "#incidents tr[data-store]")
        assert [r.get_attribute("data-store") for r in incidents] == ["zrh-01", "bsl-03"]
        assert "2.0 h" in incidents[0].text                           # opened two hours ago, oldest first
        assert "gva-02" not in driver.page_source and "Intake" not in driver.page_source
        driver.find_element(By.CSS_SELECTOR, "form[action='/logout'] button").click()   # the session's CSRF token
        WebDriverWait(driver, 15).until(lambda d: d.current_url.endswith("/login") and d.find_elements(By.ID, "login"))
        driver.get(url + "/")
        assert driver.current_url.endswith("/login")
    finally:
        driver.quit()
