// Command pvsim is the volume provisioner of the suite's simulated cluster: kwok runs no kubelet
// and no CSI driver, so nothing would ever bind a claim. pvsim watches PersistentVolumeClaims
// of the StorageClasses naming it as their provisioner and, for each pending claim, creates a
// matching PersistentVolume (a hostPath folder under --root, capacity and access modes as
// requested, claimRef set); the cluster's own PV controller then binds the two. As K3s's
// local-path provisioner does, a class binding WaitForFirstConsumer gets its volume only once
// the scheduler picked a node for the claim's first pod (annotation
// volume.kubernetes.io/selected-node), and the volume is pinned to that node. A volume it
// provisioned whose claim is gone (phase Released) is deleted again (reclaim policy Delete).
//
//	pvsim --kubeconfig FILE --provisioner NAME --root DIR
package main

import (
	"context"
	"flag"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// selectedNode is set on a claim by the scheduler when the claim's first pod is placed.
const selectedNode = "volume.kubernetes.io/selected-node"

// provisionedBy is the annotation dynamic provisioners put on their volumes (the PV controller
// reads it to know that an external provisioner owns the volume's deletion).
const provisionedBy = "pv.kubernetes.io/provisioned-by"

type provisioner struct {
	client  kubernetes.Interface
	name    string // the provisioner field of the StorageClasses served
	root    string // hostPath volumes are folders below it
	classes storagelisters.StorageClassLister
}

func main() {
	kubeconfig := flag.String("kubeconfig", "", "kubeconfig of the cluster")
	name := flag.String("provisioner", "manacore.dev/pvsim", "StorageClasses' provisioner served")
	root := flag.String("root", "/tmp/pvsim", "folder holding the volumes' hostPath folders")
	flag.Parse()

	config, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		log.Fatalf("kubeconfig: %v", err)
	}
	client, err := kubernetes.NewForConfig(config)
	if err != nil {
		log.Fatalf("client: %v", err)
	}
	p := &provisioner{client: client, name: *name, root: *root}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	// a resync every 30 s retries whatever failed (e.g. the API server was briefly away)
	factory := informers.NewSharedInformerFactory(client, 30*time.Second)
	claims := factory.Core().V1().PersistentVolumeClaims().Informer()
	volumes := factory.Core().V1().PersistentVolumes().Informer()
	p.classes = factory.Storage().V1().StorageClasses().Lister()
	onClaim := func(obj any) {
		if claim, ok := obj.(*corev1.PersistentVolumeClaim); ok {
			p.provision(ctx, claim)
		}
	}
	onVolume := func(obj any) {
		if volume, ok := obj.(*corev1.PersistentVolume); ok {
			p.reclaim(ctx, volume)
		}
	}
	for informer, handle := range map[cache.SharedIndexInformer]func(any){
		claims: onClaim, volumes: onVolume} {
		if _, err := informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    handle,
			UpdateFunc: func(_, obj any) { handle(obj) },
		}); err != nil {
			log.Fatalf("watch: %v", err)
		}
	}
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done()) // the classes are known before the first claim
	log.Printf("pvsim: provisioning claims of provisioner %q under %s", p.name, p.root)
	<-ctx.Done()
	factory.Shutdown()
}

// provision creates the volume of a pending, unbound claim of a served class.
func (p *provisioner) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim) {
	if claim.Spec.StorageClassName == nil || claim.Spec.VolumeName != "" ||
		claim.Status.Phase != corev1.ClaimPending || claim.DeletionTimestamp != nil {
		return
	}
	class, err := p.classes.Get(*claim.Spec.StorageClassName)
	if err != nil || class.Provisioner != p.name {
		return
	}
	node := claim.Annotations[selectedNode]
	if node == "" && class.VolumeBindingMode != nil &&
		*class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
		return // provisioned once the claim's first pod has a node
	}
	request, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		log.Printf("claim %s/%s requests no storage: skipped", claim.Namespace, claim.Name)
		return
	}
	name := "pvc-" + string(claim.UID) // the name external provisioners give, one per claim
	folder := filepath.Join(p.root, claim.Namespace+"-"+claim.Name+"-"+string(claim.UID))
	if err := os.MkdirAll(folder, 0o755); err != nil {
		log.Printf("volume %s: %v", name, err)
		return
	}
	volume := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        name,
			Annotations: map[string]string{provisionedBy: p.name},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: request},
			AccessModes:                   claim.Spec.AccessModes,
			VolumeMode:                    claim.Spec.VolumeMode,
			StorageClassName:              class.Name,
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			ClaimRef: &corev1.ObjectReference{
				Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID,
			},
			PersistentVolumeSource: corev1.PersistentVolumeSource{
				HostPath: &corev1.HostPathVolumeSource{Path: folder},
			},
		},
	}
	if class.ReclaimPolicy != nil {
		volume.Spec.PersistentVolumeReclaimPolicy = *class.ReclaimPolicy
	}
	if node != "" { // only there, as a local volume would be
		volume.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{
			NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
				Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{node},
			}}}},
		}}
	}
	_, err = p.client.CoreV1().PersistentVolumes().Create(ctx, volume, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err): // created on an earlier event; the PV controller binds it
	case err != nil:
		log.Printf("volume %s for claim %s/%s: %v", name, claim.Namespace, claim.Name, err)
	default:
		log.Printf("volume %s (%s) for claim %s/%s", name, request.String(), claim.Namespace,
			claim.Name)
	}
}

// reclaim deletes a volume pvsim provisioned once its claim is gone.
func (p *provisioner) reclaim(ctx context.Context, volume *corev1.PersistentVolume) {
	if volume.Annotations[provisionedBy] != p.name ||
		volume.Status.Phase != corev1.VolumeReleased ||
		volume.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete ||
		volume.DeletionTimestamp != nil {
		return
	}
	// only ever a folder pvsim made itself, below its root
	if hp := volume.Spec.HostPath; hp != nil && filepath.Dir(hp.Path) == filepath.Clean(p.root) {
		if err := os.RemoveAll(hp.Path); err != nil {
			log.Printf("volume %s: %v", volume.Name, err)
			return
		}
	}
	err := p.client.CoreV1().PersistentVolumes().Delete(ctx, volume.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		log.Printf("volume %s: %v", volume.Name, err)
		return
	}
	log.Printf("volume %s deleted (its claim is gone)", volume.Name)
}
