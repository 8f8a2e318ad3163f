package check

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"text/template"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// goTemplate executes the template file on data (JSON) the way kubectl's
// -o go-template-file does: on the object decoded into plain maps, with
// missing keys allowed (kubectl's default).
func goTemplate(file string, data []byte) (string, error) {
	tmpl, err := template.New(filepath.Base(file)).Option("missingkey=default").ParseFiles(file)
	if err != nil {
		return "", err
	}
	var obj any
	if err := json.Unmarshal(data, &obj); err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, obj); err != nil {
		return "", err
	}
	return b.String(), nil
}

// podList is pods as `kubectl get pods -o json` prints them.
func podList(t *testing.T, pods []corev1.Pod) []byte {
	t.Helper()
	data, err := json.Marshal(corev1.PodList{TypeMeta: metav1.TypeMeta{Kind: "List", APIVersion: "v1"}, Items: pods})
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// notReady runs kubernetes/not-ready.tmpl on pods.
func notReady(t *testing.T, pods []corev1.Pod) string {
	t.Helper()
	out, err := goTemplate(filepath.Join(kubeDir, "not-ready.tmpl"), podList(t, pods))
	if err != nil {
		t.Fatalf("executing not-ready.tmpl: %v", err)
	}
	return out
}

// notReadyPods are pods not ready for the reasons a learner meets, and a
// ready and a terminating one.
func notReadyPods() []corev1.Pod {
	pod := func(name string, status corev1.PodStatus) corev1.Pod {
		return corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: status}
	}
	waiting := func(reason, message string) []corev1.ContainerStatus {
		return []corev1.ContainerStatus{{Name: "hello", Image: "registry.example/team/hello:9.9.9",
			State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: reason, Message: message}}}}
	}
	notReadyCond := []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}
	deleted := pod("old", corev1.PodStatus{Conditions: notReadyCond})
	now := metav1.Now()
	deleted.DeletionTimestamp = &now
	return []corev1.Pod{
		pod("pull", corev1.PodStatus{Phase: corev1.PodPending, Conditions: notReadyCond,
			ContainerStatuses: waiting("ImagePullBackOff", `Back-off pulling image "registry.example/team/hello:9.9.9"`)}),
		pod("crash", corev1.PodStatus{Phase: corev1.PodRunning, Conditions: notReadyCond,
			ContainerStatuses: waiting("CrashLoopBackOff", "back-off 40s restarting failed container=hello")}),
		pod("unscheduled", corev1.PodStatus{Phase: corev1.PodPending, Conditions: []corev1.PodCondition{{
			Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: "Unschedulable",
			Message: "0/3 nodes are available: 3 node(s) had untolerated taint {kubernetes.io/arch: arm64}."}}}),
		pod("mount", corev1.PodStatus{Phase: corev1.PodPending, Conditions: notReadyCond,
			ContainerStatuses: waiting("ContainerCreating", "")}),
		pod("probe", corev1.PodStatus{Phase: corev1.PodRunning, Conditions: notReadyCond,
			ContainerStatuses: []corev1.ContainerStatus{{Name: "nginx", RestartCount: 2,
				State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}),
		pod("ready", corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}},
			ContainerStatuses: []corev1.ContainerStatus{{Name: "hello", Ready: true, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}}),
		deleted,
	}
}

// TestNotReadyTemplate checks what make deploy says about pods that are
// not ready, for the reasons a learner meets: an image that cannot be
// pulled, a crashing container, a pod no node takes, a missing ConfigMap
// key, a failing readiness probe; ready and terminating pods say nothing.
func TestNotReadyTemplate(t *testing.T) {
	pods := notReadyPods()
	want := strings.Join([]string{
		"pull\thello\tImagePullBackOff\timage registry.example/team/hello:9.9.9: Back-off pulling image \"registry.example/team/hello:9.9.9\"",
		"crash\thello\tCrashLoopBackOff\timage registry.example/team/hello:9.9.9: back-off 40s restarting failed container=hello",
		"unscheduled\t-\tPending\tUnschedulable: 0/3 nodes are available: 3 node(s) had untolerated taint {kubernetes.io/arch: arm64}.",
		"mount\thello\tContainerCreating\timage registry.example/team/hello:9.9.9",
		"probe\tnginx\tNotReady\trunning, 2 restarts",
		"",
	}, "\n")
	if got := notReady(t, pods); got != want {
		t.Errorf("not-ready.tmpl wrote\n%s\nwant\n%s", got, want)
	}
}
