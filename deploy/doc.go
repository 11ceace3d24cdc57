// Package deploy holds agora's deployment files: the image (Dockerfile,
// build-image.sh, `make docker`), a 3-master, 3-agent Docker Compose
// cluster (docker-compose.yml with compose/*.toml), and systemd units
// (systemd/). Its only Go code is the Docker-tier test (build tag docker,
// `make test-docker`): it builds the image, brings the compose cluster up,
// runs a replicated key-value service with `agora service`, stops the
// leader's container and checks that the service and its data survive.
// Without a Docker engine or compose it skips with a loud message.
package deploy
