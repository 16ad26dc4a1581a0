FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 UV_PROJECT_ENVIRONMENT=/venv UV_PYTHON_DOWNLOADS=never \
    PATH="/venv/bin:$PATH" DJANGO_SETTINGS_MODULE=config.settings.production
WORKDIR /app
RUN pip install --no-cache-dir uv
COPY pyproject.toml uv.lock ./
RUN uv sync --frozen --no-dev
COPY . .
RUN DJANGO_SECRET_KEY=build DJANGO_ALLOWED_HOSTS=x DATABASE_URL=sqlite:////tmp/x REDIS_URL=redis://x \
    KOMMO_TOKEN_ENCRYPTION_KEY=build KOMMO_PUBLIC_URL=http://x python manage.py collectstatic --no-input
RUN useradd --create-home portal
USER portal
EXPOSE 8000
CMD ["gunicorn", "config.wsgi", "-c", "config/gunicorn.py"]
