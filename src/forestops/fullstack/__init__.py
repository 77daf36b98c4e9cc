"""`make fullstack`: the services of deploy/docker-compose.yml as local processes, without Docker."""
